"""Reportgrid's AWS deployment: typed config, one construct per file, stacks that compose."""
