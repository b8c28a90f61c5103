"""Prefect Block types holding saferails settings and notifier configuration."""

from blocks.settings import NotifierBlock, Runtime, SaferailsSettings, current_runtime, install_runtime

__all__ = ["NotifierBlock", "Runtime", "SaferailsSettings", "current_runtime", "install_runtime"]
