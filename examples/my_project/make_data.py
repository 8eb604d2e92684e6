"""Write data.npz for this example: 3,000 rows of 20 features, a 4-class label and a real target."""
import sys

import numpy as np

rng = np.random.default_rng(0)
n, d = 3000, 20
x = rng.standard_normal((n, d)).astype(np.float32)
digit = (x[:, :4] @ rng.standard_normal((4, 4))).argmax(axis=1)
size = np.tanh(x[:, 4:8].sum(axis=1)) + 0.1 * rng.standard_normal(n)
test = np.arange(n) >= 2500
np.savez(sys.argv[1] if len(sys.argv) > 1 else "data.npz", x=x, digit=digit, size=size.astype(np.float32), test=test)
