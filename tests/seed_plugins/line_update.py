# ruff: noqa: UP004, UP032 - written in the seed's Python 2-era style on purpose
# A seed-style plugin that extends a line with set_xdata/set_ydata and plt.draw(),
# as the seed README shows: the cumulative number of data packets vs calls.
import matplotlib.pyplot as plt
import numpy as np


class CumulativeDataPackets(object):
    def __call__(self, filename, fh, fig=None):
        packets = fh['packets']
        n_new = np.count_nonzero(packets[packets['packet_type'] == 0]['packet_type'] == 0)
        if fig is None:
            fig = plt.figure(figsize=(4, 3))
            ax = fig.add_subplot(111)
            ax.plot([1], [n_new], 'o-')
            ax.set_xlabel('update')
            ax.set_ylabel('data packets so far')
            return fig
        axes = fig.get_axes()
        lines = axes[0].get_lines()
        old_xy = lines[0].get_xydata()
        new_xy = [[old_xy[-1, 0] + 1, old_xy[-1, 1] + n_new]]
        xy = np.append(old_xy, new_xy, axis=0)
        lines[0].set_xdata(xy[:, 0])
        lines[0].set_ydata(xy[:, 1])
        axes[0].relim()
        axes[0].autoscale_view()
        plt.draw()
        return fig


class ChannelHelper(object):
    """Not a plot: no __call__, so discovery leaves it alone."""

    def __init__(self):
        self.channels = {}


def _pair_factory(io_group):
    class PairCount(object):
        def __call__(self, filename, fh, fig=None):
            if fig is not None:
                plt.figure(fig.number)
                plt.close()
            selected = fh['packets'][['io_group', 'packet_type']]
            mine = selected[selected['io_group'] == self.io_group]
            fig = plt.figure(figsize=(3, 2))
            fig.suptitle('io_group {}: {}'.format(self.io_group, len(mine)))
            return fig
    PairCount.io_group = io_group
    return PairCount


# Factory-made classes, named by their module-level binding like the seed's PixelMap_X_X.
for _io_group in (1, 2):
    globals()['PairCount_{}'.format(_io_group)] = _pair_factory(_io_group)
