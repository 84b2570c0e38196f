"""Capability detection and run profiles.

>>> from webinfer.capability import detect, choose_profile
>>> report = detect()                 # adapter, features, limits (+ browser facts in Pyodide)
>>> print(report.format())
>>> profile = choose_profile(report)  # e.g. "software-adapter" on lavapipe
"""

from .profiles import Profile, choose_profile, get_profile, profile_names
from .report import CapabilityReport, detect

__all__ = ["CapabilityReport", "Profile", "choose_profile", "detect", "get_profile", "profile_names"]
