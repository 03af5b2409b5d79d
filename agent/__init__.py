"""Edge vision agent: camera streams -> YOLO -> MQTT, with signed OTA model updates."""

__version__ = "0.1.0"
