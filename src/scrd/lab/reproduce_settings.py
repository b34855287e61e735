"""What ``scrd reproduce`` knows of the paper's tables and datasets, shared by the runner
(:mod:`.reproduce`) and the table it writes (:mod:`.reproduce_table`)."""

from __future__ import annotations

from typing import Any

TABLES: dict[str, str] = {  # name -> what it is (the CLI's choices and help)
    "table1": "Table 1: results on RSNA, Brain Tumor and ISIC 2018 (SCRD, RD4AD, a PatchCore-style kNN)",
    "table2": "Table 2: ablation of contrastive reverse distillation (CRD) and scale adaptation (SAM)",
    "table3": "Table 3: simplex against Gaussian noise",
    "table4": "Table 4: ResNet-34, ResNet-50 and Wide ResNet-50-2 teachers",
    "fig3": "Fig. 3: noise strength λ from 0.1 to 0.5 on RSNA",
}
# Where `scrd data prepare DATASET --out data/<folder>` puts each dataset in the docs' examples.
DATA_FOLDERS: dict[str, str] = {"rsna": "RSNA", "brain-tumor": "BrainTumor", "isic2018": "ISIC2018"}
DATASET_TITLES: dict[str, str] = {
    "rsna": "RSNA (chest X-ray)",
    "brain-tumor": "Brain Tumor (MRI)",
    "isic2018": "ISIC 2018",
}

# --smoke: the smallest settings every row still trains, calibrates and evaluates with (random
# weights, so no download; mobilenet_v2 replaces every backbone, Table 4's included).
SMOKE_SETTINGS: dict[str, Any] = {
    "model.arch": "mobilenet_v2",
    "model.weights": "none",
    "model.image_size": 32,
    "train.iterations": 2,
    "train.batch_size": 4,
    "train.holdout_fraction": 0.25,
    "noise.min_size": 4,
    "noise.max_size": 12,
}
SMOKE_PHANTOM = {"n_train": 12, "n_test_normal": 4, "n_test_abnormal": 4, "size": 32}
