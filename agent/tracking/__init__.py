"""Multi-object tracking per camera: our ByteTrack (pure, batched Kalman filter) and the
adapter on the `trackers` package's, behind one small interface, and the pure stationary-object
bookkeeping."""
