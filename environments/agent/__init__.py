"""Slipway's deploy agent: standard library only, so it can be copied to a host as it is."""

VERSION = "0.1"
