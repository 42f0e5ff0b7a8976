"""
The PyTorch runner's entry script: `python3 gpu-agent/python/serve.py --model reference …`.
Running a file puts its directory first on sys.path, so the floodgate_runner package beside it
is found without installing anything (the agent starts the runner this way).
"""

from floodgate_runner.server import main

if __name__ == "__main__":
    main()
