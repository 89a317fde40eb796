"""Evasion by a key-sample detector (Li et al. §6.3, Hitaj et al.): the thief trains a detector on
keys it made itself with the public scheme and answers flagged queries with the runner-up class."""
from __future__ import annotations

import torch
from torch import nn

from .. import detector, rules
from ..data import Splits
from ..train import TrainConfig, predict_proba
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register


class KeyDetectorOracle(Oracle):
    """Evasion (Li et al. §6.3, Hitaj et al.): the thief's API runs a key-sample ``detector``
    (a binary classifier, class 1 = key) on every query and answers a flagged one with the
    runner-up class (the top two scores swapped), so that a trigger never gets the label it was
    trained to. The flagging threshold keeps ``fpr`` of the thief's own ordinary images
    (``reference``) flagged: the accuracy the thief is willing to give up."""

    def __init__(self, inner: Oracle, detector: nn.Module, reference: torch.Tensor, fpr: float = 0.05):
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr (the share of ordinary queries flagged) must be in (0, 1), got {fpr}")
        self.inner, self.detector, self.queries = inner, detector.eval(), 0
        self.threshold = float(torch.quantile(self.scores(reference).double(), 1.0 - fpr))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The detector's probability that each image is a key sample."""
        return predict_proba(self.detector, x)[:, 1].float().cpu()

    def flags(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x) > self.threshold

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x).clone()
        flagged = self.flags(x).to(p.device)
        if flagged.any():
            top = p[flagged].topk(2, dim=1).indices
            rows = p[flagged]
            first, second = rows.gather(1, top[:, :1]), rows.gather(1, top[:, 1:])
            rows.scatter_(1, top[:, :1], second).scatter_(1, top[:, 1:], first)
            p[flagged] = rows
        return p


class KeyDetector(Attack):
    """Li et al. §6.3: a detector trained on keys the thief made itself with the public scheme
    (:meth:`~wmlib.schemes.Scheme.thief_key`) gates the API."""
    question = "survives the key-sample detector"
    name, side = "key-detector", "query"
    about = "a detector trained on keys the thief made itself; flagged queries get the runner-up class"
    knobs = {"detector_epochs": rules.integer(1), "detector_lr": rules.number(0.0, rules.INF, lo_open=True),
             "detector_fpr": rules.number(0.0, 1.0, lo_open=True, hi_open=True), "detector_ordinary": rules.integer(1)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        """Keys of its own from the first part of its images (:attr:`Threat.splits`; the held-out key a
        scheme makes alongside is discarded, so it may come from any of the thief's images), a detector
        trained on them against those same images, and its threshold set on the thief's held-out
        images, which it never trained on."""
        k, s, seed = threat.settings, threat.spec, threat.seed + 100
        mine = threat.splits
        own = threat.scheme.thief_key(self.task(threat), seed, model, threat.model_name,
                                      TrainConfig.from_knobs(k, seed=seed), threat.tag)
        torch.manual_seed(threat.seed)
        det = detector.pixel_detector(s.channels, s.image_size)
        cfg = TrainConfig(epochs=k["detector_epochs"], batch_size=128, lr=k["detector_lr"], seed=threat.seed)
        detector.train_detector(det, mine.owner.x, own.x, cfg)
        out = KeyDetectorOracle(Oracle(model), det, mine.test.x, k["detector_fpr"])
        return Suspect(out, {}, {"detector": det, "images": own.x})

    @staticmethod
    def task(threat: Threat) -> Splits:
        """The task the thief makes its keys on: the first part of its images, and all of them as the
        held-out data a scheme draws its (discarded) held-out key from."""
        return Splits(threat.splits.owner, threat.splits.thief, threat.thief, threat.spec)

    def owner_report(self, suspect: Suspect, threat: Threat, owner) -> dict:
        """How well the thief's detector separates the owner's key from ordinary test images (ROC AUC),
        the share of the key it flags and the share of ordinary test images it flags."""
        ordinary = owner.test.x[:threat.settings["detector_ordinary"]]
        return {"auc": detector.detection_roc(suspect.parts["detector"], ordinary, owner.key.x)[2],
                "flagged_key": float(suspect.oracle.flags(owner.key.x).float().mean()),
                "flagged_test": float(suspect.oracle.flags(ordinary).float().mean())}


register(KeyDetector())
