"""The PyTorch runner's tests: `npm run test:python` (unittest, CPU, Debian's PyTorch)."""
