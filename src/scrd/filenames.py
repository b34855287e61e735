"""The name of every file scrd writes into a run directory or an output folder: one list.

A run directory (``scrd train --out RUN``) holds the config, logs, checkpoint and the final model;
``evaluate`` and ``predict`` write into folders of their own. Code never spells these names itself.
"""

# run directory
CONFIG_FILE = "config.yaml"  # the resolved config the run was trained with
ENV_FILE = "environment.json"  # versions, device and machine of the training process
TRAIN_LOG = "train_log.csv"  # loss, per-scale distances, α statistics, images/s
EVAL_LOG = "eval_log.csv"  # metrics on a labelled set during training (train.eval_every)
STATE_FILE = "checkpoints/last.pt"  # model + optimiser + generator states, for --resume
STATE_META = "checkpoints/last.json"  # the iteration of STATE_FILE, readable without torch
MODEL_FILE = "model.pt"  # the final model's state dict
MODEL_META = "model.json"  # its config, teacher weights, calibration and provenance
TRAIN_SAMPLES = "train_samples.csv"  # the images trained on
HOLDOUT_SAMPLES = "holdout_samples.csv"  # normal training images kept out (train.holdout_fraction)
BEST_ON_TEST_DIR = "best_on_test"  # train.selection = best_on_test: a model selected on test labels
SELECTION_LOG = "selection_log.csv"  # the label-free criterion during training (train.select_every)
LABEL_FREE_DIR = "label_free_best"  # the model with the best label-free criterion so far
CALIBRATION_REQUEST = "calibration_request.json"  # what `train --calibration` asked for: --resume does it too

# written by train, evaluate and predict alike
SKIPPED_FILE = "skipped_images.csv"  # unreadable images left out (data.on_bad_image = skip), with reasons

# evaluate's output folder
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"
ROC_FILE = "roc.png"
HISTOGRAM_FILE = "histogram.png"
ALPHA_FILE = "alpha.png"  # the distribution of α per scale over the evaluated images
REPORT_FILE = "report.html"  # one self-contained page: config, metrics, figures, gallery (`scrd report`)

# predict's output folder
PREDICTIONS_FILE = "predictions.csv"  # path, score, decision, heatmap, panel (files in HEATMAP_DIR, PANEL_DIR)
PREDICT_INFO = "predict_info.json"  # which model (sha256) and settings wrote the folder
HEATMAP_DIR = "heatmaps"  # plain overlays of the anomaly map on the image
PANEL_DIR = "panels"  # original | heat map with colour bar | overlay, titled with score and decision
# marks what predict writes, so no later predict scores it as an input: a file in its output folder
# (every file below that folder is left out) and a PNG text chunk of this key in each heat map and panel
OUTPUT_MARKER = ".scrd-output"
OUTPUT_PNG_KEY = "scrd-output"

# a dataset folder in the MedIAnomaly/DDAD layout (read by every job; written by `scrd data prepare`
# and the phantom generator), and the report `scrd data prepare` writes beside it
SPLIT_FILE = "data.json"
MASKS_DIR = "masks"  # beside a dataset's images folder: a lesion mask per abnormal image, same file name
PREPARE_REPORT = "prepare_report.json"

CHECKPOINT_FORMAT = "scrd-checkpoint/2"  # model.json "format": model.pt holds the network and its scoring head
# read too: scrd 0.2 (normal-image statistics in model.json, the memory bank beside the state dict)
LEGACY_CHECKPOINT_FORMATS = ("scrd-checkpoint/1",)
