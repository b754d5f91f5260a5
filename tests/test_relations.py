"""Relations across connections, caching, inverse_of and eager loading."""

from typing import ClassVar

import pytest

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConnectionManager,
    CrossConnectionError,
    HasMany,
    HasOne,
    IntegerPKMixin,
    QueryError,
    relation,
)
from tests.conftest import SERVER_URLS, make_tables, require_backend
from tests.test_records import count_statements


class Author(IntegerPKMixin, ActiveRecord):
    __table_name__ = "authors"
    __connection__ = "default"
    id: int | None = None
    name: str
    articles: ClassVar[HasMany["Article"]] = HasMany(foreign_key="author_id", inverse_of="author")
    profile: ClassVar[HasOne["Profile"]] = HasOne(foreign_key="author_id", inverse_of="author")


class Article(IntegerPKMixin, ActiveRecord):
    __table_name__ = "articles"
    __connection__ = "secondary"
    id: int | None = None
    author_id: int | None = None
    title: str
    author: ClassVar[BelongsTo["Author"]] = BelongsTo(foreign_key="author_id",
                                                      inverse_of="articles")
    comments: ClassVar[HasMany["Comment"]] = HasMany(foreign_key="article_id")


class Comment(IntegerPKMixin, ActiveRecord):
    __table_name__ = "comments"
    __connection__ = "default"
    id: int | None = None
    article_id: int
    body: str
    article: ClassVar[BelongsTo["Article"]] = BelongsTo(foreign_key="article_id")


class Profile(IntegerPKMixin, ActiveRecord):
    __table_name__ = "profiles"
    __connection__ = "default"
    id: int | None = None
    author_id: int
    bio: str
    author: ClassVar[BelongsTo["Author"]] = BelongsTo(foreign_key="author_id", inverse_of="profile")


@pytest.fixture
def blog(db):
    make_tables(Author, Article, Comment, Profile)
    ann, bob, cid = (Author.create(name=n) for n in ("ann", "bob", "cid"))
    for author, count in ((ann, 3), (bob, 1)):
        for i in range(count):
            article = Article.create(author_id=author.id, title=f"{author.name}-{i}")
            for j in range(2):
                Comment.create(article_id=article.id, body=f"{article.title}/{j}")
    Profile.create(author_id=ann.id, bio="ann's bio")
    return db


def statements():
    return {name: count_statements(name) for name in ("default", "secondary")}


def total(seen):
    return sum(len(v) for v in seen.values())


def test_lazy_loading_runs_on_the_related_models_connection(blog):
    seen = statements()
    ann = Author.find_by(name="ann")
    articles = ann.articles()
    assert [a.title for a in articles] == ["ann-0", "ann-1", "ann-2"]
    assert any("articles" in s for s in seen["secondary"])
    assert not any("articles" in s for s in seen["default"])
    assert articles[0].author() is ann               # inverse_of: no query
    assert ann.profile().bio == "ann's bio"
    assert Author.find_by(name="cid").profile() is None
    assert Author.find_by(name="cid").articles() == []
    orphan = Article.create(title="orphan")
    assert orphan.author() is None


def test_results_are_cached_until_reload(blog):
    ann = Author.find_by(name="ann")
    first = ann.articles()
    seen = statements()
    assert ann.articles() is first and total(seen) == 0
    Article.create(author_id=ann.id, title="ann-new")
    assert len(ann.articles()) == 3
    assert len(ann.articles(reload=True)) == 4
    assert total(seen) > 0
    assert ann.articles.query().where(title="ann-new").count() == 1


def test_eager_loading_is_one_query_per_relation(blog):
    seen = statements()
    authors = Author.find_all().with_("articles", "articles.comments", "profile").all()
    # authors, profiles, comments on default; articles on secondary
    selects = {k: [s for s in v if s.lstrip().upper().startswith("SELECT")]
               for k, v in seen.items()}
    assert len(selects["default"]) == 3 and len(selects["secondary"]) == 1
    before = total(seen)
    by_name = {a.name: a for a in authors}
    assert [len(a.comments()) for a in by_name["ann"].articles()] == [2, 2, 2]
    assert by_name["bob"].articles()[0].comments()[1].body == "bob-0/1"
    assert by_name["cid"].articles() == [] and by_name["cid"].profile() is None
    assert by_name["ann"].articles()[0].author() is by_name["ann"]
    assert total(seen) == before                      # everything came from the cache
    assert Author.where(name="ann").with_("articles").first().articles()[0].title == "ann-0"
    assert [len(a.articles()) for a in Author.using("default").with_("articles").all()] == [3, 1, 0]


def test_eager_belongs_to(blog):
    seen = statements()
    articles = Article.find_all().with_("author").all()
    assert {a.author().name for a in articles} == {"ann", "bob"}
    assert len(seen["default"]) == 1


def test_in_lists_are_chunked(blog, monkeypatch):
    ann = Author.find_by(name="ann")
    Article.bulk_insert([{"author_id": ann.id, "title": f"bulk-{i}"} for i in range(50)])
    authors = [Author.create(name=f"a{i}") for i in range(25)]
    monkeypatch.setattr(relation, "in_chunk_size", lambda dialect: 10)
    seen = statements()
    loaded = Author.find_all().with_("articles").all()
    assert len([s for s in seen["secondary"] if "articles" in s]) == 3   # 28 ids, 10 per query
    assert len({a.id for a in loaded}) == 28 and authors[0].id in {a.id for a in loaded}
    assert len(next(a for a in loaded if a.name == "ann").articles()) == 53


@pytest.mark.backends("sqlite")
def test_more_parents_than_sqlite_binds(db):
    make_tables(Author, Article)
    Author.bulk_insert([{"name": f"n{i}"} for i in range(33000)])
    Article.create(author_id=32999, title="deep")
    seen = statements()
    loaded = Author.find_all().with_("articles").all()
    assert len([s for s in seen["secondary"] if "articles" in s]) == 2
    assert next(a for a in loaded if a.id == 32999).articles()[0].title == "deep"


def test_join_across_connections_raises(blog):
    with pytest.raises(CrossConnectionError, match="with_"):
        Author.find_all().join("articles").all()
    with pytest.raises(CrossConnectionError):
        Author.where(Article.c.title == "ann-0").all()
    with pytest.raises(CrossConnectionError):
        Author.where(Article.c.title == "ann-0").count()
    with pytest.raises(CrossConnectionError):
        Article.find_all().join("comments").pluck("title")
    # on one connection a join works
    with Article.using_connection("default"):
        make_tables(Article)
        Article.create(author_id=1, title="local")
        Comment.create(article_id=Article.find_by(title="local").id, body="hello")
        assert Article.join("comments").where(Comment.c.body == "hello").pluck("title") == ["local"]


def test_unknown_relations_are_rejected(blog):
    with pytest.raises(QueryError, match="no relation 'nope'"):
        Author.find_all().with_("nope")
    with pytest.raises(QueryError, match="no relation 'nope'"):
        Author.find_all().with_("articles.nope")
    with pytest.raises(QueryError):
        Author.find_all().join("nope")


def test_user_on_mysql_posts_on_postgresql():
    require_backend("mysql")
    require_backend("postgresql")
    ConnectionManager.reset()
    ConnectionManager.configure({"default": {"url": SERVER_URLS["mysql"][0]},
                                 "secondary": {"url": SERVER_URLS["postgresql"][1]}})
    try:
        make_tables(Author, Article, Comment, Profile)
        ann = Author.create(name="ann")
        Article.create(author_id=ann.id, title="cross")
        loaded = Author.find_all().with_("articles").all()
        assert loaded[0].articles()[0].title == "cross"
        assert Article.find_by(title="cross").author().name == "ann"
        assert Author.__ar_meta__.table.name == "authors"
        with pytest.raises(CrossConnectionError):
            Author.find_all().join("articles").all()
    finally:
        ConnectionManager.reset()
