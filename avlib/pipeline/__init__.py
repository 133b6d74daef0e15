"""The frozen text-to-video model (zeroscope or its tiny twin) and the audio-to-video pipeline."""
