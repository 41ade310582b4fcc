"""Classification and regression tasks on a sequence-classification head: the GLUE tasks in the official
and the sampled layouts (glue.py), your own CSV / TSV / JSON files with their label rules (own_data.py,
own_labels.py), and the head, batches and scores the two share (sequence_classification.py). Each task
module registers its tasks with `tasks.base.register` when imported."""
