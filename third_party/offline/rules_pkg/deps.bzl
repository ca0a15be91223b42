"""Offline stand-in for rules_pkg's dependency macro."""

def rules_pkg_dependencies(**kwargs):
    pass
