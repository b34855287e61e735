"""The training job and its parts: the loop, its state and resume, caches, the training images,
distributed training, monitors and label-free selection, fitting a memory bank.
"""
