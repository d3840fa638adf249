import { describe, expect, it } from 'vitest';
import { asLiteralText } from '../../core/web-ui-text';

describe('asLiteralText', () => {
  it.each([
    // Plain text, letters, digits, spaces and the punctuation that means nothing, unchanged.
    ['plain text 42', 'plain text 42'],
    ['', ''],
    ['a, b; c? "d" \'e\' / % @ = , é 😀', 'a, b; c? "d" \'e\' / % @ = , é 😀'],
    // Emphasis, strong, strikethrough, code, sub- and superscript.
    ['**bold**', '\\*\\*bold\\*\\*'],
    ['_it_ __strong__', '\\_it\\_ \\_\\_strong\\_\\_'],
    ['~~gone~~ ~sub~ ^sup^', '\\~\\~gone\\~\\~ \\~sub\\~ \\^sup\\^'],
    ['`code` ```fence```', '\\`code\\` \\`\\`\\`fence\\`\\`\\`'],
    // Links, images, autolinks, references, footnotes.
    ['[link](http://x)', '\\[link\\]\\(http\\://x\\)'],
    ['![img](http://127.0.0.1:1/x.png)', '\\!\\[img\\]\\(http\\://127\\.0\\.0\\.1\\:1/x\\.png\\)'],
    ['see https://evil.example/a?b=c', 'see https\\://evil\\.example/a?b=c'],
    ['mail mailto:a@b.c', 'mail mailto\\:a@b\\.c'],
    ['<http://x> [x][ref] [^1]', '\\<http\\://x\\> \\[x\\]\\[ref\\] \\[\\^1\\]'],
    // Raw HTML and entities.
    ['<b>tag</b>', '\\<b\\>tag\\</b\\>'],
    ['<img src=x onerror=alert(1)>', '\\<img src=x onerror=alert\\(1\\)\\>'],
    ['<!-- c --> <script>x</script>', '\\<\\!\\-\\- c \\-\\-\\> \\<script\\>x\\</script\\>'],
    ['&lt; &amp; &#60;', '\\&lt; \\&amp; \\&\\#60;'],
    // Math, inline and block.
    ['cost $0.001 of $5', 'cost \\$0\\.001 of \\$5'],
    ['$$x^2$$', '\\$\\$x\\^2\\$\\$'],
    // Block starters, kept on one line: headings, lists, quotes, tables, rules, code, setext.
    ['# h1\n## h2', '\\# h1 \\#\\# h2'],
    ['- item\n+ item\n* item\n1. item', '\\- item \\+ item \\* item 1\\. item'],
    ['> quote', '\\> quote'],
    ['| a | b |\n|---|---|', '\\| a \\| b \\| \\|\\-\\-\\-\\|\\-\\-\\-\\|'],
    ['title\n===', 'title ==='],
    ['x\n\n    indented code', 'x      indented code'],
    ['a\r\nb\rc\u2028d\u2029e\u000bf\u000cg\u0085h', 'a b c d e f g h'],
    ['{#id} {.class}', '\\{\\#id\\} \\{\\.class\\}'],
    // Backslashes: every one doubled, so none escapes what follows the text.
    ['a\\', 'a\\\\'],
    ['\\*not bold\\*', '\\\\\\*not bold\\\\\\*'],
    // The pause reason.
    [
      '**bold** [link](http://x) <b>tag</b> ![img](http://127.0.0.1:1/x.png) cost $0.001 of $5',
      '\\*\\*bold\\*\\* \\[link\\]\\(http\\://x\\) \\<b\\>tag\\</b\\> \\!\\[img\\]\\(http\\://127\\.0\\.0\\.1\\:1/x\\.png\\) cost \\$0\\.001 of \\$5',
    ],
  ])('%j → %j', (input, expected) => {
    expect(asLiteralText(input)).toBe(expected);
  });

  it('loses nothing: removing the escapes gives the text back, line breaks as spaces', () => {
    const hostile = '**b** _i_ `c` [l](u) ![i](u) <b>t</b> &amp; $1 of $2 # ~ ^ | {} + - . ! : \\';
    expect(asLiteralText(hostile).replace(/\\(.)/g, '$1')).toBe(hostile);
  });
});
