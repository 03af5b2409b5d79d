"""Home Assistant MQTT device discovery: a pure payload builder and its small publisher."""
