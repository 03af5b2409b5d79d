"""Multi-object tracking per camera: the tracker adapter (ByteTrack from the `trackers`
package behind our own interface) and the pure stationary-object bookkeeping."""
