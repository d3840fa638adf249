import { truncate } from './format';
import { watchFrame, watchLine, type RunView } from './run-view';

/** Where `runs watch` shows the run: redrawn in place on a terminal, appended lines elsewhere. */
export interface Screen {
  update(view: RunView, note?: string): void;
  close(): void;
}

export function screenFor(stream: NodeJS.WriteStream): Screen {
  return stream.isTTY ? new LiveScreen(stream) : new LogScreen(stream);
}

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';
const CLEAR_TO_END = '\x1b[J';

/** Moves the cursor back up over the last frame and writes the next over it. */
class LiveScreen implements Screen {
  private drawnLines = 0;
  private closed = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(view: RunView, note?: string): void {
    // A line wider than the terminal wraps into two, and the next redraw would climb one too few.
    const width = Math.max(20, (this.stream.columns || 100) - 1);
    const lines = watchFrame(view, new Date(), note).map((line) => truncate(line, width));
    const back = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A\r` : HIDE_CURSOR;
    this.stream.write(`${back}${CLEAR_TO_END}${lines.join('\n')}\n`);
    this.drawnLines = lines.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.write(SHOW_CURSOR);
  }
}

/** One line per change, for logs and pipes: nothing is ever overwritten. */
class LogScreen implements Screen {
  private last = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(view: RunView, note?: string): void {
    const line = `${watchLine(view)}${note ? ` · ${note}` : ''}`;
    if (line === this.last) return;
    this.last = line;
    this.stream.write(`${new Date().toISOString().slice(11, 19)}Z ${line}\n`);
  }

  close(): void {}
}
