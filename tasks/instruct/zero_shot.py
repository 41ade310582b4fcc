"""Zero-shot style transfer with an instruction-following LM: the prompt, and the answer cut.

The model sees the Alpaca template (tasks.instruct.alpaca_template) with a fixed instruction per target style
(the recorded defaults live in salora_cli.transfer.transfer_config) and the lower-cased source as the input; it
is never trained on the style data.

The answer cut (`cut_answer`), applied to the text the model wrote after the prompt (the prompt's own
tokens are never decoded, so the template cannot be echoed back into the answer):
1. the text ends at EOS (special tokens are dropped by decoding);
2. it is cut at the first "###" (the template's next block: a model that goes on writes
   "### Instruction:" or "### Input:") and at the first blank line;
3. the first non-empty line is kept: a rewrite of a one-line source is one line;
4. a template field label at its start ("Response:", "Output:", "Answer:", "Rewrite:") is dropped: it is
   the template's field name repeated, not content;
5. at most as many sentences are kept as the source has (at least one; a sentence ends with . ! or ?,
   or one of them and a closing quote, followed by a space): a second sentence after a one-sentence
   rewrite is chatter ("The food was great. I changed the sentiment.");
6. one pair of quotes around what is left is dropped when the source is not quoted itself (the model
   quoting its rewrite; sources and references carry no such quotes).
Nothing else is removed: a lead-in such as "Here is the rewritten sentence:" stays in the answer and is
counted as off-task (tasks.instruct.output_checks), since a reader would see it.

`answer_complete` says when generating more cannot change the cut (a "###", a line of content ended by
a newline, or one sentence more than the cut keeps has begun): tasks.generation stops a row there.
"""
from __future__ import annotations

import re
from typing import Sequence

from tasks.instruct.alpaca_template import alpaca_prompt

ANSWER_END_MARKS = ("###",)  # where the template's next block would start
FIELD_LABEL = re.compile(r"^(?:response|output|answer|rewrite|rewritten)\s*:\s*", re.IGNORECASE)
QUOTE_PAIRS = (('"', '"'), ("“", "”"), ("'", "'"))
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"”'])\s+")


def transfer_prompt(instruction: str, source: str, lowercase: bool = True) -> str:
    """The Alpaca prompt with the instruction and the (lower-cased) source as its input."""
    return alpaca_prompt(instruction, source.lower() if lowercase else source)


def sentences(text: str) -> list[str]:
    """`text` split after each . ! or ? that a space follows (tokenised Yelp text: " ." counts too)."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _strip_quotes(line: str, source: str) -> str:
    for left, right in QUOTE_PAIRS:
        if len(line) > 1 and line.startswith(left) and line.endswith(right) and not source.strip().startswith(left):
            return line[len(left):-len(right)].strip()
    return line


def cut_answer(generated: str, source: str, end_marks: Sequence[str] = ANSWER_END_MARKS) -> str:
    """The rewrite inside a generated continuation (the rule in the module docstring)."""
    text = generated
    for mark in end_marks:
        text = text.split(mark, 1)[0]
    text = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = FIELD_LABEL.sub("", lines[0]).strip()
    line = " ".join(sentences(line)[:_kept_sentences(source)])
    return _strip_quotes(line, source)


def _kept_sentences(source: str) -> int:
    return max(1, len(sentences(source)))


def answer_complete(generated: str, source: str, end_marks: Sequence[str] = ANSWER_END_MARKS) -> bool:
    """Whether `cut_answer` of `generated` is final: whatever is generated next gets cut away."""
    if any(mark in generated for mark in end_marks):
        return True
    text = generated.lstrip()
    if "\n" in text:
        return True
    return len(sentences(FIELD_LABEL.sub("", text))) > _kept_sentences(source)
