"""Jia, Choquette-Choo, Chandrasekaran & Papernot, "Entangled Watermarks as a Defense against Model
Extraction", USENIX Security 2021 (its abstract), and the reproduction of it by MEA-Defender's authors
(Lv et al., S&P 2024, preprint): ``../shared/papers/notes/wrt.md``."""

ACCURACY_COST = 0.0081
"""The abstract: ownership shown "at a modest cost below 0.81 percentage points on average" of task accuracy (a mean
over its tasks)."""

QUERIES = 100
"""The abstract: 95 % confidence "with less than 100 queries" to the stolen model."""

EXTRACTED = 0.1874
EXTRACTED_SD = 0.1230
"""MEA-Defender's reproduction: EWE's watermark success on extracted models, CIFAR-10, 18.74 ± 12.30 % (their
own scheme: 71.05 ± 5.05 %; what the ± spans is not in our notes). EWE's issue tracker reports the extracted models'
success swinging from 1-3 % to 98 % across runs on MNIST."""

SETTING = "MNIST, Fashion-MNIST, CIFAR-10 and Speech Commands (the reproduction: CIFAR-10)"
