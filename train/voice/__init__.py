"""Speech-emotion head training: feature extraction (cached), speaker-disjoint CV, ONNX export, reports.

`affectstream train voice --data DIR [--labels CSV]` is `train.voice.cli.main`. See README.md here for
what the shipped head was trained on and what its data licences imply.
"""
