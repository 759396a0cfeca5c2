"""Thin Celery tasks, one module per stage: validate the payload, call the stage
function from :mod:`cortex_school.stages`, return its outcome as JSON."""
