"""Frames in, faces and visitors out: source → detect → align → classify → track, as one `Analyzer`."""
