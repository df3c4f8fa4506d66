"""Frames in, faces and visitors out: source → detect → align → classify → track, as one `Analyzer`."""

import os

# Before any module here loads OpenCV: its own warnings and FFmpeg's ("moov atom not found")
# would otherwise come before, and say less than, the one line each failure gets from us. Set
# either variable to see them again.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
