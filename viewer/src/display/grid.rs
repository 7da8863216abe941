//! Where a new window goes: the next free cell of a grid that fits the
//! screen. Pure arithmetic, no X: the display thread asks it for a place
//! and gives the cell back when the window closes.
//!
//! The grid has a cell for every window that can be open at once
//! (`--max-clients`), laid out in the columns and rows that leave a 4:3
//! camera the largest window: 16 on a 1920x1080 screen are 4x4 cells of
//! 480x270, so 360x270 windows. A cell is never smaller than
//! [`MIN_CELL`]; when that many do not fit, windows past the grid's cells
//! share the least used cell (they overlap there, and only there). A window
//! takes its frame's aspect ratio, shrunk to fit its cell but never
//! enlarged: one camera on a big screen keeps its own size.
//!
//! The cells leave no room for a window manager's decorations; a window
//! manager places windows by its own rules anyway. Without one (a kiosk,
//! Xvfb) the windows tile exactly.

/// The smallest cell, in pixels: below this a camera is not worth a window.
pub const MIN_CELL: (u32, u32) = (160, 120);

/// A window's place: its cell, and its position and size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub cell: usize,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug)]
pub struct Grid {
    cols: u32,
    rows: u32,
    cell_width: u32,
    cell_height: u32,
    /// Windows in each cell, row by row.
    used: Vec<u32>,
}

impl Grid {
    /// A grid on a `screen` (width, height) for `windows` windows at once.
    pub fn new(screen: (u32, u32), windows: usize) -> Grid {
        let (sw, sh) = (screen.0.max(1), screen.1.max(1));
        let n = u32::try_from(windows.max(1)).unwrap_or(u32::MAX);
        // Every layout with at least n cells, and the window a 4:3 frame
        // gets in it; fewer cells win a tie.
        let mut best = (1, 1, 0u64);
        let max_cols = (sw / MIN_CELL.0).max(1);
        let max_rows = (sh / MIN_CELL.1).max(1);
        for cols in 1..=max_cols.min(n) {
            let rows = n.div_ceil(cols).min(max_rows);
            let (cw, ch) = (sw / cols, sh / rows);
            // Width of a 4:3 window fitted in the cell.
            let width = u64::from(cw).min(u64::from(ch) * 4 / 3);
            let cells = cols * rows;
            let better = width > best.2 || (width == best.2 && cells < best.0 * best.1);
            if cells >= n.min(max_cols * max_rows) && better {
                best = (cols, rows, width);
            }
        }
        let (cols, rows, _) = best;
        Grid {
            cols,
            rows,
            cell_width: sw / cols,
            cell_height: sh / rows,
            used: vec![0; (cols * rows) as usize],
        }
    }

    /// Columns and rows.
    pub fn shape(&self) -> (u32, u32) {
        (self.cols, self.rows)
    }

    /// Places a window for a `frame` (width, height) in the first free
    /// cell, or the least used one when all are taken.
    pub fn place(&mut self, frame: (u32, u32)) -> Place {
        let cell = (0..self.used.len())
            .min_by_key(|&i| self.used[i])
            .unwrap_or(0);
        if let Some(used) = self.used.get_mut(cell) {
            *used += 1;
        }
        let cell_u32 = u32::try_from(cell).unwrap_or(0);
        let (col, row) = (cell_u32 % self.cols, cell_u32 / self.cols);
        let (width, height) = fit(frame, (self.cell_width, self.cell_height));
        Place {
            cell,
            x: col * self.cell_width,
            y: row * self.cell_height,
            width,
            height,
        }
    }

    /// A window in `cell` closed.
    pub fn release(&mut self, cell: usize) {
        if let Some(used) = self.used.get_mut(cell) {
            *used = used.saturating_sub(1);
        }
    }
}

/// `frame` shrunk to fit `cell` with its aspect ratio, never enlarged;
/// at least 1x1.
fn fit(frame: (u32, u32), cell: (u32, u32)) -> (u32, u32) {
    let (fw, fh) = (u64::from(frame.0.max(1)), u64::from(frame.1.max(1)));
    let (cw, ch) = (u64::from(cell.0.max(1)), u64::from(cell.1.max(1)));
    if fw <= cw && fh <= ch {
        return (fw as u32, fh as u32);
    }
    // The tighter of the two ratios, in integers: fw/cw vs fh/ch.
    let (w, h) = if fw * ch >= fh * cw {
        (cw, fh * cw / fw)
    } else {
        (fw * ch / fh, ch)
    };
    (w.max(1) as u32, h.max(1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &Place, b: &Place) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    #[test]
    fn sixteen_cameras_fit_one_full_hd_screen() {
        let mut grid = Grid::new((1920, 1080), 16);
        assert_eq!(grid.shape(), (4, 4));
        let places: Vec<Place> = (0..16).map(|_| grid.place((640, 480))).collect();
        for (i, a) in places.iter().enumerate() {
            assert_eq!((a.width, a.height), (360, 270), "{a:?}");
            assert!(a.x + a.width <= 1920 && a.y + a.height <= 1080, "{a:?}");
            for b in &places[i + 1..] {
                assert!(!overlap(a, b), "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn nine_cameras_tile_without_overlap_and_keep_their_size_when_it_fits() {
        let mut grid = Grid::new((1280, 1024), 16);
        let places: Vec<Place> = (0..9).map(|_| grid.place((320, 240))).collect();
        for (i, a) in places.iter().enumerate() {
            assert_eq!((a.width, a.height), (320, 240));
            for b in &places[i + 1..] {
                assert!(!overlap(a, b), "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn a_freed_cell_is_the_next_one_taken() {
        let mut grid = Grid::new((1280, 1024), 4);
        let a = grid.place((640, 480));
        let b = grid.place((640, 480));
        assert_eq!((a.cell, b.cell), (0, 1));
        assert_eq!((b.x, b.y), (640, 0));
        grid.release(a.cell);
        assert_eq!(grid.place((640, 480)).cell, 0);
        assert_eq!(grid.place((640, 480)).cell, 2);
    }

    #[test]
    fn windows_past_the_cells_share_the_least_used_cell() {
        // 65536 clients cannot each have a 160x120 cell on 640x480: 4x4.
        let mut grid = Grid::new((640, 480), 65536);
        assert_eq!(grid.shape(), (4, 4));
        let cells: Vec<usize> = (0..20).map(|_| grid.place((640, 480)).cell).collect();
        assert_eq!(&cells[..16], &(0..16).collect::<Vec<_>>()[..]);
        assert_eq!(&cells[16..], &[0, 1, 2, 3]);
    }

    #[test]
    fn one_camera_keeps_its_size_and_a_big_one_shrinks_with_its_aspect() {
        let mut grid = Grid::new((1920, 1080), 1);
        assert_eq!(grid.shape(), (1, 1));
        let p = grid.place((640, 480));
        assert_eq!((p.x, p.y, p.width, p.height), (0, 0, 640, 480));
        assert_eq!(fit((3840, 2160), (1920, 1080)), (1920, 1080));
        assert_eq!(fit((4000, 3000), (1920, 1080)), (1440, 1080));
        assert_eq!(fit((100_000, 1), (160, 120)), (160, 1));
        assert_eq!(fit((0, 0), (160, 120)), (1, 1));
    }
}
