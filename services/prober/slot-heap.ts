// A binary min-heap of scheduled items by due time, with removal of any item: the scheduler keeps
// one timer for the earliest due check instead of one timer per real (10,000 timers with distinct
// delays cost more than the checks they start, and starve I/O when they fall behind).

export interface HeapItem { nextAt: number; seq: number; heapIndex: number }

export class SlotHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  get size(): number { return this.items.length; }

  peek(): T | undefined { return this.items[0]; }

  push(it: T): void {
    it.heapIndex = this.items.length;
    this.items.push(it);
    this.up(it.heapIndex);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top) this.remove(top);
    return top;
  }

  remove(it: T): void {
    const i = it.heapIndex;
    if (i < 0 || this.items[i] !== it) return;
    const last = this.items.pop()!;
    it.heapIndex = -1;
    if (last === it) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  private less(a: T, b: T): boolean {
    return a.nextAt < b.nextAt || (a.nextAt === b.nextAt && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const a = this.items[i], b = this.items[j];
    this.items[i] = b; b.heapIndex = i;
    this.items[j] = a; a.heapIndex = j;
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(this.items[i], this.items[p])) return;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && this.less(this.items[l], this.items[m])) m = l;
      if (r < n && this.less(this.items[r], this.items[m])) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
