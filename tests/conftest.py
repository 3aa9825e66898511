import sys
from pathlib import Path

# the shared fixture checks live beside the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))
