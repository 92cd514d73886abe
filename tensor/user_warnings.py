"""Warnings that name the user's line: the first frame outside Phalanx, however deep in
Phalanx the condition was noticed (through a method, an in-place method or a function)."""
import sys
import warnings


def warn_user(message, category=UserWarning):
    frame, level = sys._getframe(1), 2      # 1 would name this function
    while frame is not None and \
            frame.f_globals.get("__name__", "").partition(".")[0] == "phalanx":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
