"""What a thief does to dodge the proof: one contract (:mod:`.base`), one module per family.

* :mod:`.model` — model-side: fine-tuning, pruning, prune + fine-tune, quantisation, adversarial
  fine-tuning, transfer to another task (Wen et al.), overwriting;
* :mod:`.query` — query-side: input noise, score rounding, half-precision scores, score perturbation;
* :mod:`.query_modification` — Namba & Sakuma's autoencoder query modification;
* :mod:`.key_detector` — a key-sample detector that answers flagged queries with the runner-up class;
* :mod:`.extraction` — retraining on stolen labels (same or another architecture), distillation, Knockoff Nets,
  retraining on scores averaged over augmented queries, an ensemble on disjoint shares;
* :mod:`.fine_pruning` — Liu et al.'s fine-pruning; :mod:`.neural_cleanse` — trigger inversion, unlearning and
  pruning;
* :mod:`.adversarial_training` — PGD adversarial fine-tuning, and adversarial extraction;
* :mod:`.jpeg` — JPEG-compressed queries;
* :mod:`.modification` — the reference toolkit's model modification: FTLL, RTLL, RTAL, weight shifting, label
  smoothing and noising, weight quantisation with fine-tuning, regularisation, transfer learning from a clean
  pretrained backbone;
* :mod:`.input_preprocessing` — smoothing (Gaussian, mean, median), input quantisation, feature squeezing, flipped queries,
  an always-on autoencoder;
* :mod:`.backdoor_defences` — backdoor defences used as removals: Neural Attention Distillation;
* :mod:`.combined` — attacks chained.

Each module registers its attacks of the comparison suite (:data:`REGISTRY`, in this order); a new
attack is one more module (or one file of your own) that subclasses :class:`Attack` and calls
:func:`register`.
"""
from .base import REGISTRY, THREAT_KNOBS, Attack, NotApplicable, OracleThreat, OwnerView, Suspect, Threat, get, owned_knobs, register
from .model import (PRUNE_SCOPES, FineTune, Measure, Overwrite, Prune, PruneFineTune, Quantize, Transfer,
                    WorstPruneFineTune, thief_prune_finetune,
                    adversarial_finetune, finetune, finetune_config, finetune_trials, last_trial_asr, make_permanent, measure,
                    overwrite,
                    overwrite_table,
                    prune_finetune, prune_finetune_sweep, prune_magnitude, prune_sweep, pruning_probe, quantize_weights,
                    sparsity, worst_prune_finetune, worst_within_budget)
from .query import (FixedNoiseOracle, InputNoise, LowPrecisionOracle, NoisyOracle, PerturbedOracle, Perturbation,
                    RoundedOracle, Rounding)
from .query_modification import (AutoencoderBank, QueryModification, QueryModificationAttack, autoencoder_length_sweep,
                                 background_error, detection_table, invalidation_table, jensen_shannon,
                                 rec_loss_detection, train_autoencoder)
from .key_detector import KeyDetector, KeyDetectorOracle
from .extraction import (Distillation, Ensemble, EnsembleExtraction, Knockoff, Retraining, SmoothRetraining, Tempered,
                         averaged_labels, extract, fresh_model, knockoff_queries, pretrained_backbone, stolen_labels)
from .fine_pruning import FinePruning, channel_activations, fine_prune, last_conv, mask_channels
from .neural_cleanse import (NeuralCleanse, NeuralCleansePruning, Trigger, anomaly_index, cleanse, flagged, nc_prune,
                             reverse_trigger, reversed_triggers, unlearn)
from .adversarial_training import AdversarialExtraction, AdversarialTraining, pgd_finetune
from .jpeg import Jpeg, JpegOracle, jpeg_compress
from .modification import (MODIFICATIONS, LabelNoising, LabelSmoothing, LastLayer, Regularization, TransferLearning,
                           WeightQuantization, WeightShifting, noised, quantize_bins, reset_last_layer, shift_weights,
                           smoothed)
from .input_preprocessing import (PREPROCESSING, InputPreprocessing, InputReconstruction, PreprocessedOracle, flip_inputs,
                                  gaussian_smooth, mean_smooth, median_smooth, quantize_inputs, squeeze_bits)
from .backdoor_defences import NeuralAttentionDistillation, attention_map, attention_points, nad
from .combined import Chain

__all__ = [n for n in dir() if not n.startswith("_")]
