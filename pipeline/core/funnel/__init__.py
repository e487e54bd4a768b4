"""The funnel analyses, one module each: conversion, timing (SLA, stage durations), feedback
(rejected MQLs) and volume planning, on the common stage ranks of `common`."""
