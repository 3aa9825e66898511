FACTOR = 3


def scale(v):
    return v * FACTOR
