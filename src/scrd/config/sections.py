"""The sections of a config: every choice the paper leaves open is a named option here.

The defaults are the product: the recommended detector (the ``denoising_knn`` preset, measured in
docs/studies/brain_tumor.md), so ``Config()``, ``scrd train`` and the README agree. The released code, the
paper's text and RD4AD are presets over these defaults (:mod:`.presets`). An option marked
:func:`replay` exists to replay the paper, the released code or one study; docs/configuration.md
lists those apart. The ``Literal`` types are the one list of valid choices: the CLI, the presets and
the validation all read them from here. This module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .validation import validate_section

Arch = Literal["resnet18", "resnet34", "resnet50", "wide_resnet50_2", "mobilenet_v2"]
ARCHITECTURES: tuple[str, ...] = typing.get_args(Arch)

# The released training script seeds its simplex generator with this value (np.random.randint
# right after setup_seed(111)); the fixed noise texture is the field of this seed.
OFFICIAL_NOISE_SEED = 7698519916
# Per-pixel std of the 6-octave OpenSimplex sum (measured over many seeds): Gaussian noise of
# this std perturbs with the same energy as simplex noise at one λ.
SIMPLEX_FRACTAL_STD = 0.4


def replay(default: Any) -> Any:
    """A field that exists to replay the paper, the released code or one study (listed apart in
    docs/configuration.md); everyday use leaves it at its default."""
    return dataclasses.field(default=default, metadata={"replay": True})


def is_replay(section: type, name: str) -> bool:
    return bool(next(f for f in dataclasses.fields(section) if f.name == name).metadata.get("replay"))


class _Section:
    """A config section checks itself whenever it is made, by YAML, directly or by ``dataclasses.replace``."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        validate_section(self, self.section)


@dataclass
class ModelConfig(_Section):
    section: ClassVar[str] = "model"

    # scrd: the distillation model; knn: the training-free memory-bank reference on the same teacher
    method: Literal["scrd", "knn"] = "scrd"
    arch: Arch = "mobilenet_v2"  # the paper's teacher is wide_resnet50_2 (presets official, paper, rd4ad)
    weights: str = "imagenet"  # 'imagenet' (torchvision IMAGENET1K_V1), 'none' or a file path
    image_size: int = 256  # images are resized to image_size x image_size (aspect ratio not kept), as the released code
    # scrd only: after training, also fit the knn section's memory bank of teacher patches (the
    # reference detector's, on the same teacher, no training) and add its map to the student's when
    # scoring (scoring.memory_bank_weight): two detectors that miss different things, one pass
    memory_bank: bool = True
    # global: one α per image from the bottleneck (paper Eq. 3); spatial: one α per location from the
    # teacher's features there (our extension; trained with loss.alpha_objective = separation)
    scale_head: Literal["global", "spatial"] = replay("global")


@dataclass
class KnnConfig(_Section):
    """The memory-bank reference detector (model.method = knn), PatchCore-style; also the bank that
    model.memory_bank fits beside a trained student."""

    section: ClassVar[str] = "knn"

    scales: tuple[int, int] = (2, 3)  # teacher scales whose 3x3-averaged features make a patch vector
    pool: int = 3  # local averaging window (1: none)
    # how the bank is drawn: a random subset or a greedy k-centre coreset (the default at 1 %: level with
    # a 10 % random bank on brain MRI, above it on chest X-ray, 3 seeds each; a tenth of the rows)
    sampling: Literal["random", "coreset"] = "coreset"
    fraction: float = 0.01  # of all normal training patches kept in the bank
    # how the bank is searched: exact (every row; the reference, and what ONNX export computes) or an
    # inverted-file index (k-means lists, exact inside the probed ones; scoring/bank_index.py)
    search: Literal["exact", "ivf"] = "exact"
    ivf_lists: int = 0  # k-means lists of the ivf search (0: about 2·√rows)
    ivf_probe: int = 16  # lists searched per patch (recall rises with it, and the cost)


@dataclass
class NoiseConfig(_Section):
    """The synthetic anomalies of training: a noise patch added to a normal image (paper §2.2.2)."""

    section: ClassVar[str] = "noise"

    # the noise inside a patch: smooth simplex (the paper) or Gaussian (Table 3)
    kind: Literal["simplex", "gaussian"] = "simplex"
    strength: float = 0.2  # λ, added in [0, 1] image space before normalisation, unclipped
    min_size: int = 10  # patch side drawn uniformly in [min_size, max_size]
    max_size: int = 31  # largest patch side (pixels)
    patches_per_image: int = 1  # synthetic patches pasted into each noisy image
    # fixed: the released code's single texture; fresh: new noise for every patch
    field: Literal["fixed", "fresh"] = replay("fresh")
    octaves: int = replay(6)  # octaves summed in the simplex noise (the released code's)
    persistence: float = replay(0.6)  # each octave's amplitude relative to the one before
    frequency: float = replay(32.0)  # the first octave's period in pixels; each next octave halves it
    field_seed: int = replay(OFFICIAL_NOISE_SEED)  # the simplex permutation seed (the released code's)
    gaussian_std: float = replay(SIMPLEX_FRACTAL_STD)  # noise.kind gaussian (paper Table 3)
    # Patch sizes/positions: 'official' = numpy RandomState(train.seed) after the released script's
    # two seed draws, so seed 111 replays its patch sequence; 'legacy' = RandomState(seed) without
    # them; 'generator' = numpy default_rng.
    patch_rng: Literal["official", "legacy", "generator"] = replay("generator")


@dataclass
class LossConfig(_Section):
    section: ClassVar[str] = "loss"

    # rd4ad: Eq. 1 (no contrastive term); ratio_of_sums: the released code (Algorithm 2); per_scale_ratio: Eq. 4
    form: Literal["rd4ad", "ratio_of_sums", "per_scale_ratio"] = "rd4ad"
    # What the student reconstructs from. 'clean' (the paper): v from the clean image, pulled towards its
    # teacher features u and pushed away from the noisy image's z. 'noisy' (a denoising reading): v from
    # the noisy image's features, pulled towards the clean u and pushed away from z, so the student
    # learns to repair anomalies instead of copying them.
    student_input: Literal["clean", "noisy"] = "noisy"
    # where the scale head's α enters the loss: inside the cosine (the released code: a no-op), weighting
    # each scale's distance (Eq. 4), or not at all
    alpha_placement: Literal["inside_cosine", "outside", "none"] = replay("none")
    # the contrastive ratio of batch means (the released code) or the mean of per-image ratios
    batch_reduction: Literal["ratio_of_means", "mean_of_ratios"] = replay("ratio_of_means")
    eps: float = replay(0.0)  # ε in the ratio's denominator (Eq. 4; none in the released code)
    alpha_grad: Literal["train", "detach"] = replay("train")  # whether the loss trains the scale head through α
    # What trains the scale head. 'loss': the loss that α weights (the paper; it collapses α to the scale
    # with the smallest ratio). 'separation': α of a noisy image is trained to weight the scales whose
    # maps best separate its synthetic anomaly from the rest of the image (the maps are detached, so
    # only the head learns from it); the distillation loss then uses α without training it.
    alpha_objective: Literal["loss", "separation"] = replay("loss")
    # β of an entropy bonus −β·H(α) on the head's objective: keeps α soft instead of one-hot
    alpha_entropy: float = replay(0.0)


@dataclass
class TrainConfig(_Section):
    section: ClassVar[str] = "train"

    iterations: int = 4000  # the paper's figure; the released script runs 40000
    batch_size: int = 16  # images per iteration (and per scoring batch during training)
    lr: float = 1e-3  # Adam learning rate (the released code's)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (the released code's)
    # constant (the released code, the paper) or cosine: linear warm-up over lr_warmup iterations, then a
    # half cosine from lr to 0 at the last iteration (see scrd.training.lr_schedule)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    lr_warmup: int = 0  # iterations of linear warm-up before the cosine decay
    # Normal training images kept out of training (chosen by seed, listed in the run directory): the
    # normal-image statistics of the scoring and the threshold are measured on them, out of sample.
    holdout_fraction: float = 0.1
    # at least this many held out (never more than a quarter of the normals): the 95 % threshold from 50
    # held-out brain MRIs reached 0.945 ± 0.023 specificity on new normals, from 20 0.933 ± 0.053
    # (benchmarks/holdout_size.py); 0 with holdout_fraction 0
    holdout_min: int = 50
    seed: int = 111  # seeds the batch order, the held-out split, the synthetic patches and the bank draw
    deterministic: bool = False  # deterministic kernels: a killed CPU run resumes to the same weights bit for bit
    device: str = "auto"  # auto: CUDA when available
    # auto: bf16 autocast where the hardware computes bf16 natively (losses and maps stay fp32); fp32 is
    # the strict mode that the golden parity tests check
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True  # NHWC tensors for teacher and student (faster convolutions on CPU and GPU)
    # The frozen teacher's features of the clean training images, and the decoded images, are the same
    # at every epoch: computed once. auto: in memory within cache_memory_gb, else memory-mapped files
    # in the run directory.
    feature_cache: Literal["auto", "memory", "disk", "off"] = "auto"
    image_cache: Literal["auto", "memory", "disk", "off"] = "auto"  # the decoded training images, as feature_cache
    cache_memory_gb: float = 4.0  # the caches' memory budget before they go to disk (auto)
    num_workers: int = 0  # DataLoader worker processes that decode images (0: in the training process)
    checkpoint_every: int = 500  # iterations between resumable checkpoints (checkpoints/last.pt)
    log_every: int = 10  # iterations between rows of train_log.csv
    eval_every: int = 0  # 0: no evaluation during training (needs --eval-data)
    # final: the last iteration's model; best_on_test: the best AUROC on the labelled --eval-data (labelled
    # as selected on test labels); label_free: the best label-free criterion (see select_every)
    selection: Literal["final", "best_on_test", "label_free"] = "final"
    # every select_every iterations, the AUROC of held-out normals vs synthetic anomalies of other kinds
    # (cut-paste, intensity blobs) is logged: label-free model selection and early stopping
    select_every: int = 0
    early_stop_patience: int = 0  # stop after this many label-free evaluations without a better one (0: never)
    # the noisy image through the bottleneck and decoder too (the released code) or the teacher only (Fig. 1)
    noisy_branch: Literal["full_model", "encoder_only"] = replay("encoder_only")
    bn_eval_after_validation: bool = replay(False)  # replicate the released code's BatchNorm-mode slip
    # Train on at most this many of the normal images left after the held-out split, chosen by seed
    # (0: all): a few-normals study on a large dataset, with the same held-out images.
    max_images: int = replay(0)


@dataclass
class ScoringConfig(_Section):
    section: ClassVar[str] = "scoring"

    sigma: float = 4.0  # Gaussian smoothing of the map (scipy 'reflect' boundary)
    # the image score from the smoothed map: its mean (SCRD), its max (RD4AD, PatchCore), or the mean
    # of its top_k_percent highest values (small lesions without the max's single-pixel noise)
    score: Literal["mean", "max", "top_k"] = "top_k"
    top_k_percent: float = 5.0  # the share of the map's highest values that score 'top_k' averages
    # teacher and student features averaged over a feature_pool x feature_pool neighbourhood before the
    # per-pixel cosine (1: none, the released code); compares local context rather than single positions
    feature_pool: int = 3
    # How the scale maps become one (scrd.scoring.scale_fusion). 'sum': as they are; 'standardized': each
    # scale map minus its pixel mean over normal images, over their pixel std; 'normal_sum': each map in
    # units of its own image score's spread over normal images; 'normal_softmax': those maps weighted
    # per image by softmax(z / fusion_temperature), z the scales' standardised image scores, so the
    # scale at which the image departs most from normal images weighs most. The normal_* fusions set
    # the scale weights themselves: they cannot be combined with alpha_weighting 'weighted'.
    scale_fusion: Literal["sum", "standardized", "normal_sum", "normal_softmax"] = "normal_softmax"
    fusion_temperature: float = 2.0  # T of normal_softmax: lower weighs the most unusual scale more
    # a model with a memory bank (model.memory_bank): its map's weight beside the student's, each map
    # first put in units of its image score's spread over normal images (0: the student's map alone)
    memory_bank_weight: float = 1.0
    # fixed: score as the options above say; label_free: at the end of training, choose the reduction,
    # the pooling and the fusion among a fixed set by how well each separates the held-out normal images
    # from altered copies of them, focal and diffuse (scrd.training.scoring_choice); no label is used
    choose: Literal["fixed", "label_free"] = "fixed"
    # how α enters the map: 'none' not at all; 'weighted' each scale's map times α_k (paper §2.4);
    # 'inside_cosine' (the released code) 1 − cos(α_k·u, α_k·v): α cancels unless it is saturated,
    # when the cosine's norm floor makes a scale with a vanishing α_k read 1 everywhere
    alpha_weighting: Literal["none", "weighted", "inside_cosine"] = replay("none")
    # a fixed weight for each scale's map when they are combined (0 drops a scale): (0, 1, 1) compares
    # the two deeper scales only, the features the knn reference uses
    scale_weights: tuple[float, float, float] = replay((1.0, 1.0, 1.0))


@dataclass
class DataConfig(_Section):
    """How files become [0, 1] images: grey-level mapping, DICOM frames, NIfTI slicing."""

    section: ClassVar[str] = "data"

    # grey-level mapping to [0, 1]: none (stored range: 8 bit / 255, 16 bit / 65535), minmax or percentile
    # per image, fixed window (e.g. Hounsfield units for CT)
    intensity: Literal["none", "minmax", "percentile", "fixed"] = "none"
    percentiles: tuple[float, float] = (1.0, 99.0)  # for intensity 'percentile', per image
    window: tuple[float, float] = (0.0, 255.0)  # for intensity 'fixed', stored units (HU for CT)
    dicom_frames: Literal["reject", "first", "middle", "all"] = "reject"  # multi-frame DICOM: refuse, one frame or each
    nifti_axis: int = 2  # 0 sagittal, 1 coronal, 2 axial (after reorienting to RAS+)
    nifti_percentiles: tuple[float, float] = (0.5, 99.5)  # volume-wide robust range -> [0, 1]
    nifti_tissue_level: float = 0.1  # a voxel is tissue above this normalised value
    nifti_min_tissue: float = 0.05  # keep slices with at least this tissue fraction (0 keeps all)
    on_bad_image: Literal["error", "skip"] = "error"  # skip: listed in the run/output folder, counted
    # larger images are refused before decoding (Pillow's decompression-bomb limit); raise it for big scans
    max_image_pixels: int = 178_956_970


SECTION_TYPES: dict[str, type] = {
    "model": ModelConfig,
    "knn": KnnConfig,
    "noise": NoiseConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "scoring": ScoringConfig,
    "data": DataConfig,
}


def uses_synthetic_anomalies(loss: LossConfig) -> bool:
    """Whether training makes noisy images: for the contrastive forms, a noisy student input or the
    scale head's separation objective (plain RD4AD needs none)."""
    return loss.form != "rd4ad" or loss.student_input == "noisy" or loss.alpha_objective == "separation"
