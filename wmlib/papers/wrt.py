"""Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?" (S&P 2022),
and its Watermark-Robustness-Toolbox: each scheme at its most robust setting against its best attack on
CIFAR-10. WRT's result files were never published: the rescaled watermark accuracies are read off the
toolbox's own vector figures, to about ±0.01 (``../shared/papers/notes/wrt.md``). Each scheme's
accuracy is rescaled so that its decision threshold sits at 0.5: below 0.5 the watermark is removed."""

MAX_LOSS = 0.007
"""Every scheme was removed within 0.7 points of the marked model's CIFAR-10 test accuracy (ImageNet: 3)."""

RESCALED = {"Adi": 0.46, "content": 0.46, "noise": 0.02, "unrelated": 0.48, "frontier stitching": 0.40,
            "Blackmarks": 0.00, "EWE": 0.495, "Uchida": 0.27, "DeepSigns": 0.00, "DeepMarks": 0.29, "DAWN": 0.48}
"""Rescaled watermark accuracy after the scheme's best attack (0.5: the threshold)."""

BEST_ATTACK = {"DeepSigns": "feature permutation", "DAWN": "smooth retraining"}
"""The best attack where the notes name it."""

BOOK_ENTRY = {"Adi": "adi", "content": "zhang-content", "noise": "zhang-noise", "unrelated": "zhang-unrelated",
              "frontier stitching": "frontier-stitching"}
"""The book's entry for the same scheme (Zhang et al.'s three keys; frontier stitching as the toolkit keys it, where
Namba & Sakuma's ``namba-afs`` keeps only true adversaries at eps 0.1); the others are not in the book yet."""

SETTING = "CIFAR-10, ResNet, WRT's thief (a third of the training set; all of it for extraction)"
