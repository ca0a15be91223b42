"""Offline stand-in for bazel_skylib's bzl_library (documentation only)."""

def bzl_library(**kwargs):
    pass
