"""Intake: proposals from files, stdin and the video service's Redis list become stored
improvements (or recorded rejections); new ones start the pipeline."""
