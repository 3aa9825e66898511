"""Functions that misbehave at run time, each in its own way."""

import os
import sys
import time

import torch


def sleeps(x):
    while True:
        time.sleep(0.05)


def exits_hard(x):
    os._exit(3)


def calls_exit(x):
    sys.exit(2)


def plain(x):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] + 1
    return out
