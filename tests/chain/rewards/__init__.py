"""Tests of the reward boost engine, its parameters, exchange format and simulation."""
