"""Li, Hu, Zhang & Guo, ACSAC 2019: the numbers its chapter compares with."""

FIDELITY = {"mean drop": 0.0066, "smallest drop": 0.0014}  # Table 1 / Fig. 4: test-accuracy drop over hosts
KEY_ACCURACY_MIN = 0.90        # Fig. 5: every watermarked host answers > 90 % of its keys
CLEAN_KEY_ACCURACY = 0.11      # Fig. 5: clean models answer 9-13 % of the keys (the middle)
# Fig. 6 (pixel detector) and Fig. 7 (detector on the stolen host's features): AUC per key method; the
# paper says "well above 0.94" (0.98 for features) for the other methods: we compare with those bounds
PIXEL_DETECTOR_AUC = {"ours (blind)": 0.5, "Zhang content": 0.94, "Zhang noise": 0.94, "Zhang unrelated": 0.94}
FEATURE_DETECTOR_AUC = {"ours (blind)": 0.65, "Zhang content": 0.98, "Zhang noise": 0.98, "Zhang unrelated": 0.98}
FORGED_CONTENT = 0.91          # §6.4 (a): "TEST" on fresh images forges > 91 % on a Zhang content host
LEAK_OFF_DIAGONAL_MAX = 0.68   # Fig. 9: the highest key accuracy of one encoder's keys on another seed's host
FINETUNE_KEY_DROP = 0.0593     # Table 2: key-accuracy drop over 100 fine-tuning epochs (mean of 5 CIFAR hosts)
# Table 1 / Figs. 4-5 over the MNIST hosts, by the names of wmlib.schemes.li2019.table1_summary (None: not reported;
# the lowest key accuracy is the paper's bound "> 90 %")
TABLE1 = {"mean drop": FIDELITY["mean drop"], "smallest drop": FIDELITY["smallest drop"],
          "lowest key acc (watermarked)": KEY_ACCURACY_MIN, "key acc (zoo, mean)": CLEAN_KEY_ACCURACY,
          "mean clean test acc": None}
