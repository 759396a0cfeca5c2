"""The review dashboard: what waits on a person, in the browser, behind authentication."""
