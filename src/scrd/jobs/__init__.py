"""The jobs: training, evaluation, calibration, prediction, the demo and the benchmark, each a
plain function over the model that reads and writes files (names in :mod:`scrd.filenames`)."""
