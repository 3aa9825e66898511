# pytest puts this folder on sys.path (it holds a conftest.py and no __init__.py), so the
# package imports the same whether the tests run from here or from loopvec's own suite.
