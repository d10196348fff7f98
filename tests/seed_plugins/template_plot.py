# The seed README's template plotting class, as a plugin author copies it.
# ruff: noqa: UP004, UP032 - written in the seed's Python 2-era style on purpose
import matplotlib.pyplot as plt
import numpy as np


class TemplatePlot(object):
    def __call__(self, filename, fh, fig=None):
        # pre-process data in fh
        n_data = np.count_nonzero(fh['packets']['packet_type'] == 0)
        if fig is not None:
            # do stuff to update plot
            fig.axes[0].set_title('data packets: {}'.format(n_data))
        else:
            # do stuff to make new plot
            fig = plt.figure()
            ax = fig.add_subplot(111)
            ax.set_title('data packets: {}'.format(n_data))
        return fig
