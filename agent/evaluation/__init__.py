"""`edge-agent eval`: COCO-style mAP of YOLO models through the daemon's own decode path.

dataset.py (an Ultralytics dataset's split: images, labels, sha256), coco.py (pure: YOLO
labels and Detections -> COCO dicts), metrics.py (pycocotools -> Figures), runner.py (the
production Detector over the split), cli.py; the table is agent.messages.figures.
"""
