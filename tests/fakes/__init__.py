"""Test doubles that speak real provider wire formats over HTTP."""
