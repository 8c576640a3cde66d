from sacred import Experiment

ex = Experiment("one")
other = Experiment("two")


@ex.automain
def main():
    pass
