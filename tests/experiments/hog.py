"""Holds a known amount of memory for a while, as a data set loaded into RAM would."""
import time

from sacred import Experiment

ex = Experiment("hog")


@ex.config
def config():
    mb = 300  # allocated and touched
    hold_s = 1.5


@ex.automain
def main(mb, hold_s):
    data = bytearray(mb * 2 ** 20)
    data[::4096] = b"x" * len(data[::4096])  # touched: resident, not only reserved
    time.sleep(hold_s)
    return len(data) // 2 ** 20
