"""Offline stand-in for rules_pkg: packaging is not used by this project."""

def pkg_tar(**kwargs):
    pass
