"""Wen et al., function-coupled watermarks: the numbers its chapter compares with."""

CLEAN_ACCURACY = 0.9914  # Table 1: clean MNIST test accuracy
# Table 2: test accuracy of each watermarked MNIST model (the change is against CLEAN_ACCURACY)
FIDELITY = {"direct #1": 0.9913, "direct #2": 0.9914, "direct #3": 0.9913, "invisible r = 0.5": 0.9912,
            "invisible r = 0.7": 0.9911, "invisible r = 0.9": 0.9913}
ASR = 1.0                 # Tables 2-3, Figs. 5-6 and 8-9: the triggers' attack success rate, kept under each attack
TRANSFER_ASR_MIN = 0.70   # Fig. 7: above 70 % after transfer learning
MASKING_GAIN = 0.10       # Fig. 10: ASR gained under fine-tuning by masking + train-time fine-tune (mean of 4 tasks)
# Table 4 (CIFAR-10 ResNet-18): watermark accuracy after each attack, per method
# (the rivals under their catalogue names, wmlib.schemes.CATALOGUE; the paper's names in TABLE4_NAMES)
TABLE4 = {"zhang-content": {"fine-tune": 0.89, "transfer": 0.70, "pruning": 0.8932, "overwriting": 0.851},
          "namba-proposal": {"fine-tune": 0.82, "transfer": 0.38, "pruning": 0.8375, "overwriting": 0.833},
          "namba-afs": {"fine-tune": 0.431, "transfer": 0.30, "pruning": 0.8362, "overwriting": 0.684},
          "ours direct": {"fine-tune": 1.0, "transfer": 0.782, "pruning": 1.0, "overwriting": 1.0}}
TABLE4_NAMES = {"zhang-content": "Zhang content", "namba-proposal": "Namba EW", "namba-afs": "frontier stitching (AFS)"}


def paper_value(row: str) -> float:
    """The paper's number for one of the chapter's MNIST rows (:func:`wmlib.schemes.function_coupled.mnist_rows`):
    Table 1's clean accuracy, Table 2's accuracy change of the watermark the row names (NaN if the paper has none), or
    the ASR every other row keeps."""
    if row.startswith("Table 1"):
        return CLEAN_ACCURACY
    if "change" in row:
        return FIDELITY.get(row.split(", ", 1)[1], float("nan")) - CLEAN_ACCURACY
    return ASR
