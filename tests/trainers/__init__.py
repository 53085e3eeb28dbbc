"""Tests of flowopd.training (a package, so its conftest does not clash with the other test folders')."""
