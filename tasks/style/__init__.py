"""Text style transfer with causal LMs: the Yelp sentiment and GYAFC formality tasks (style.py) and their
readers (style_data.py); Yelp's delete-and-retrieve pieces, marker deletion (markers.py), retrieval of
target-style words (retrieval.py) and the checkpoint-selection score (selection.py); the style metrics
(style_metrics.py: BLEU, self-BLEU, accuracy, fluency, G); and the style classifier behind style accuracy,
trained as a classification task on the style data (style_classifier.py)."""
