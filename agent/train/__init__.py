"""`edge-agent train`: fine-tune a YOLO on a dataset with Ultralytics (the optional `train`
extra, AGPL-3.0), export ONNX, write our manifest and a training report.

request.py (what to train, pure), report.py (the report models, pure), ultra.py (the
Ultralytics run: train, progress callbacks, export), outputs.py (model files, manifest and
report in the output folder), cli.py (the command).
"""
