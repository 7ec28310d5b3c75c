"""The unit figures are reported in: bits. Models give natural logs (nats); one bit is ln 2 nats."""

import math

LN2 = math.log(2)
