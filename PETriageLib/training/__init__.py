"""Training and evaluation of the two-stage cascade on your own data.

One job per file: ``manifest`` (what data, which labels), ``splits`` (patient-wise
train/val/test), ``cache`` (preprocessed slices on disk), ``augment`` (batch augmentation),
``train`` (one stage, resumable), ``metrics`` and ``evaluate`` (the paper's tables),
``experiment`` (the paper's model comparison on synthetic data).
"""
