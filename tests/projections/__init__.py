"""Tests of projections, reactors and their workers."""
